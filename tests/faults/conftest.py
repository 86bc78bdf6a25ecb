import os
import sys

sys.path.insert(0, os.path.dirname(__file__))  # scenarios.py, shared with bench/bench_faults.py
