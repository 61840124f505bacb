"""The exceptions pycharrnn raises beyond Python's own."""


class PyCharRNNError(Exception):
    """Base class of pycharrnn's own errors."""


class CheckpointError(PyCharRNNError, ValueError):
    """A file is not a valid pycharrnn checkpoint (wrong, truncated, foreign or too new)."""


class TrainingDiverged(PyCharRNNError):
    """The loss, a gradient or a parameter became NaN or infinite."""

    @classmethod
    def at(cls, step: int, what: str, value: float, lr: float) -> "TrainingDiverged":
        """The error for step ``step``, whose ``what`` became ``value`` at rate ``lr``."""
        return cls(f"training diverged at step {step}: the {what} is {value}. No checkpoint "
                   f"was written from it (the last is from step {step - 1} or earlier). "
                   f"Lower the learning rate (now {lr:g}) or clip the gradients "
                   "(clip_norm / clip_value).")


class RunExistsError(PyCharRNNError, FileExistsError):
    """A new run was asked for in a run directory that already holds one."""
