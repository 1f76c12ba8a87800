"""`bench train`: the tutorials' training runs on real data, in every framework, step for step.

config.py (recipes, contenders, the batch order, plan()), session.py (a contender in its worker), runner.py
(epochs interleaved across workers, the run folder, resume), analysis.py (the run read back,
trajectories and verdicts, pandas tables), report.py (the report and its figures).
"""

from .analysis import load, read, verdicts
from .config import RECIPES, Contender, TrainConfig, plan
from .runner import resume, start, train

__all__ = ["RECIPES", "Contender", "TrainConfig", "plan", "start", "resume", "train", "read", "verdicts", "load"]
