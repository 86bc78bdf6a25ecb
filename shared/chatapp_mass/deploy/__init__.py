"""Deployment descriptions: reading the Serverless Devs ``s.yaml`` (component fc3) without the cloud."""
