"""Reading checkpoint files as data: torch's restricted unpickler, never a full one.

A weight file comes from the internet or a shared cache; a full unpickler would run whatever
code its pickle names. Shared by the re-identification and the detector loaders.
"""

from __future__ import annotations

import pickle
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from reid_merge.errors import ModelError, first_line


def safe_numpy_globals() -> list[Any]:
    """What unpickling a numpy number needs: torchreid's `save_checkpoint` stores `rank1` as
    one. Reconstructing a number (and its dtype) runs no code, so the safe loader may allow it."""
    multiarray = (np._core if hasattr(np, "_core") else np.core).multiarray  # numpy 2 renamed np.core
    dtypes = getattr(np, "dtypes", None)  # numpy >= 1.25 pickles a dtype by its class
    kinds = ("Float64", "Float32", "Int64", "Int32", "Bool")
    number_dtypes = [getattr(dtypes, f"{kind}DType") for kind in kinds] if dtypes is not None else []
    return [np.dtype, multiarray.scalar, *number_dtypes]


def restricted_load(path: Path, allowed: Sequence[Any], holds: str, kind: str, hint: str = "") -> Any:
    """`torch.load(weights_only=True)` of `path`, allowing numpy numbers and the `allowed`
    globals besides torch's own: torch's restricted unpickler runs nothing else.

    Raises:
        ModelError: The file names another global (`path holds more than <holds> (<global>)`),
            or is not a torch file (`path is not <kind>`).
    """
    try:
        with torch.serialization.safe_globals([*allowed, *safe_numpy_globals()]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        unsafe = re.search(r"GLOBAL (\S+)", str(err))
        if unsafe is None:
            raise ModelError(f"{path} is not {kind} ({first_line(err)})") from err
        raise ModelError(
            f"{path} holds more than {holds} ({unsafe.group(1)}); refused, since loading it could run code{hint}"
        ) from None
    except Exception as err:
        raise ModelError(f"{path} is not {kind} ({first_line(err)})") from err
