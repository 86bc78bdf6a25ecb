"""The job's options and one recipient, as pydantic models shaped like the CAMS API.

Field names are snake_case; aliases are the API's own parameter names (``ChannelType``, ``From``...), so a
sidecar JSON, an HTTP body or the SDK map use the same spelling. Unknown keys are refused.
"""

from __future__ import annotations

import hashlib
import json
import re
from enum import Enum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from chatapp_mass.core.errors import OptionsError
from chatapp_mass.core.messaging import limit_value


class ChannelType(str, Enum):
    whatsapp = "whatsapp"
    viber = "viber"
    messenger = "messenger"
    instagram = "instagram"

    @property
    def uses_phone_numbers(self) -> bool:
        """WhatsApp and Viber address phone numbers; Messenger and Instagram page-scoped user ids."""
        return self in (ChannelType.whatsapp, ChannelType.viber)


VIBER_ONLY = ("ttl", "label", "tag")
PRODUCT_ONLY = {"messaging_limit"}  # job options that are not SendChatappMassMessage parameters

_API = ConfigDict(populate_by_name=True, extra="forbid", frozen=True, str_strip_whitespace=True)


class JobOptions(BaseModel):
    """What every recipient of the job receives: the API's request parameters except ``SenderList``."""

    model_config = _API

    channel_type: ChannelType = Field(alias="ChannelType")
    template_code: str | None = Field(default=None, alias="TemplateCode", min_length=1)
    template_name: str | None = Field(default=None, alias="TemplateName", min_length=1)
    language: str = Field(alias="Language", min_length=1)
    from_: str = Field(alias="From", min_length=1)
    task_id: str | None = Field(default=None, alias="TaskId", min_length=1)
    cust_space_id: str | None = Field(default=None, alias="CustSpaceId", min_length=1)
    fall_back_id: str | None = Field(default=None, alias="FallBackId", min_length=1)
    fall_back_content: str | None = Field(default=None, alias="FallBackContent", min_length=1)
    fall_back_duration: int | None = Field(default=None, alias="FallBackDuration", ge=60, le=43200)
    fall_back_rule: Literal["undelivered", "sentFailed"] | None = Field(default=None, alias="FallBackRule")
    ttl: int | None = Field(default=None, alias="Ttl", ge=30, le=1209600)
    label: Literal["promotion", "transaction"] | None = Field(default=None, alias="Label")
    tag: str | None = Field(default=None, alias="Tag", min_length=1)
    # Not an API parameter: the product's own cap of recipients per rolling 24 h for the job's From (WhatsApp's
    # messaging limit, ``core.messaging``; the smaller of it and CHATAPP_MESSAGING_LIMITS applies). Kept in the
    # job's record (:meth:`to_record`), never sent (:meth:`to_api`), and not part of the job's identity (a
    # sending knob, like --qps: a rerun with another limit resumes the same job, under the limit it was
    # created with).
    messaging_limit: int | None = Field(default=None, alias="MessagingLimit")

    @field_validator("messaging_limit", mode="before")
    @classmethod
    def _messaging_limit(cls, value: Any) -> int | None:
        return limit_value(value)

    @model_validator(mode="after")
    def _channel_rules(self) -> JobOptions:
        if not self.template_code and not self.template_name:
            raise ValueError("give TemplateCode or TemplateName (at least one)")
        if self.channel_type is ChannelType.viber and not self.template_code:
            raise ValueError("Viber needs TemplateCode")
        if self.channel_type is not ChannelType.viber:
            for name in VIBER_ONLY:
                if getattr(self, name) is not None:
                    alias = JobOptions.model_fields[name].alias
                    raise ValueError(f"{alias} is for the viber channel only, not {self.channel_type.value}")
        return self

    def to_api(self) -> dict[str, Any]:
        """The request parameters as the API names them (None left out; the product's own options too)."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json", exclude=PRODUCT_ONLY)

    def to_record(self) -> dict[str, Any]:
        """What a job's record keeps (``JobRecord.options``): the request parameters and the product's own."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


class IntakeOptions(BaseModel):
    """How the recipient file is read. These change which rows are valid, so they are part of job identity."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    default_country: str | None = None
    allow_empty_params: bool = False
    delimiter: Literal[",", ";", "\t"] | None = None
    # The header name of the recipient column when it is none of the usual ones (or to pick one of two);
    # compared like them: case, spaces, underscores and dashes aside.
    recipient_column: str | None = Field(default=None, min_length=1, max_length=200)

    # The worksheet of an Excel workbook to read (default: the first); names compared case aside.
    sheet: str | None = Field(default=None, min_length=1, max_length=200)

    @field_validator("recipient_column", "sheet", mode="before")
    @classmethod
    def _trimmed(cls, value: Any) -> Any:
        return value.strip() if isinstance(value, str) else value

    @field_validator("default_country")
    @classmethod
    def _known_region(cls, value: str | None) -> str | None:
        if value is None:
            return None
        import phonenumbers  # here: options are parsed on paths that read no number (sender, api)

        code = value.strip().upper()
        if code not in phonenumbers.SUPPORTED_REGIONS:
            raise ValueError(
                f"{value!r} is not an ISO 3166 alpha-2 country code phonenumbers knows (e.g. CN, GB, US)"
            )
        return code


class FlowAction(BaseModel):
    model_config = _API
    flow_token: str | None = Field(default=None, alias="FlowToken")
    flow_action_data: dict[str, Any] | None = Field(default=None, alias="FlowActionData")


class ProductItem(BaseModel):
    model_config = _API
    product_retailer_id: str = Field(alias="ProductRetailerId", min_length=1)


class ProductSection(BaseModel):
    model_config = _API
    title: str | None = Field(default=None, alias="Title")
    product_items: list[ProductItem] = Field(default_factory=list, alias="ProductItems")


class ProductAction(BaseModel):
    """WhatsApp only: at most 10 sections and 30 products in all."""

    model_config = _API
    thumbnail_product_retailer_id: str | None = Field(default=None, alias="ThumbnailProductRetailerId")
    sections: list[ProductSection] = Field(default_factory=list, alias="Sections", max_length=10)

    @model_validator(mode="after")
    def _at_most_30_products(self) -> ProductAction:
        products = sum(len(section.product_items) for section in self.sections)
        if products > 30:
            raise ValueError(f"ProductAction has {products} products; the API allows at most 30")
        return self


class Recipient(BaseModel):
    """One entry of ``SenderList``. ``to`` is already normalized (E.164 digits without '+', or a user id)."""

    model_config = _API

    to: str = Field(alias="To", min_length=1)
    template_params: dict[str, str] | None = Field(default=None, alias="TemplateParams")
    payload: list[str] | None = Field(default=None, alias="Payload")
    flow_action: FlowAction | None = Field(default=None, alias="FlowAction")
    product_action: ProductAction | None = Field(default=None, alias="ProductAction")

    def to_api(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")

    def check_channel(self, channel: ChannelType) -> None:
        if self.product_action is not None and channel is not ChannelType.whatsapp:
            raise ValueError(f"ProductAction is for the whatsapp channel only, not {channel.value}")


def describe_validation_error(error: ValidationError, flag_names: dict[str, str] | None = None) -> str:
    """A pydantic error as one line per problem, naming the parameter as the user wrote it."""
    flag_names = flag_names or {}
    lines = []
    for problem in error.errors():
        loc = ".".join(str(part) for part in problem["loc"])
        name = flag_names.get(loc, loc) if loc else ("" if flag_names else "options")
        message = problem["msg"].removeprefix("Value error, ")
        if not loc:  # a rule across fields names them as the API does: say them as the user wrote them
            for api_name, flag in flag_names.items():
                message = re.sub(rf"\b{re.escape(api_name)}\b", flag, message)
        if problem["type"] == "extra_forbidden":
            message = "unknown option"
        lines.append(f"{name}: {message}" if name else message)
    return "; ".join(lines)


def parse_job_options(data: dict[str, Any], flag_names: dict[str, str] | None = None) -> JobOptions:
    """Build :class:`JobOptions` from API-named (or snake_case) keys; a wrong option raises OptionsError."""
    try:
        return JobOptions.model_validate(data)
    except ValidationError as error:
        raise OptionsError(describe_validation_error(error, flag_names)) from None


def parse_intake_options(data: dict[str, Any], flag_names: dict[str, str] | None = None) -> IntakeOptions:
    try:
        return IntakeOptions.model_validate(data)
    except ValidationError as error:
        raise OptionsError(describe_validation_error(error, flag_names)) from None


def job_identity(content_sha256: str, options: JobOptions, intake: IntakeOptions) -> str:
    """The job id: the file's content plus every option that changes what recipients receive.

    Sending knobs (qps, batch size, store, report path) are deliberately not part of it, so a rerun with a
    different rate resumes the same job.
    """
    # recipient_column and sheet are left out when unset so jobs made before they existed keep their ids (a
    # rerun resumes).
    unset = {name for name in ("recipient_column", "sheet") if getattr(intake, name) is None}
    canonical = json.dumps(
        {
            "file": content_sha256,
            "options": options.to_api(),
            "intake": intake.model_dump(mode="json", exclude=unset),
        },
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode()).hexdigest()[:24]
