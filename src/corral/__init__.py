"""corral: run and plan a GPU fleet shared by research, pre-training and serving."""

from corral.errors import InputError
from corral.fleet import Fleet, load_fleet
from corral.simulate import simulate
from corral.sweeps import sweep
from corral.traces import read_jobs
from corral.workload import JobTable, write_jobs

__all__ = ["Fleet", "InputError", "JobTable", "load_fleet", "read_jobs", "simulate", "sweep", "write_jobs"]
__version__ = "0.1.0"
