"""The array type that flows between the wire codecs, the serving code and the components.

A tensor's dtype is only known at run time (the request's `datatype`, the model's output), so
the static type says "an ndarray of some numpy scalar type" and no more.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

type Array = npt.NDArray[np.generic]
