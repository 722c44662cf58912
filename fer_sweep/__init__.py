"""fer-sweep: Optuna sweeps over the VGG-style FER-2013 CNNs of a master's thesis."""

from fer_sweep.errors import UserError

__all__ = ["UserError"]
__version__ = "0.1.0"
