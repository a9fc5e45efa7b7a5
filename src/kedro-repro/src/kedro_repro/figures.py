"""A figure dataset for kedro-viz: Kedro's ``MatplotlibDataset`` that previews only what exists.

A separate module: it needs matplotlib (``kedro-datasets[matplotlib-matplotlibdataset]``),
which nothing else in kedro-repro does.
"""

from __future__ import annotations

from kedro_datasets._typing import ImagePreview
from kedro_datasets.matplotlib import MatplotlibDataset


class FigureDataset(MatplotlibDataset):
    """``MatplotlibDataset`` whose preview is empty, not an error, before any run saved it.

    kedro-viz previews every dataset of every pipeline and logs a warning for each preview that
    raises; a versioned figure of a pipeline that has not run yet (a seed sweep) has no version
    to read, which is a state, not a problem.
    """

    def preview(self) -> ImagePreview:  # kedro-viz reads the preview type from this annotation
        """The stored PNG as base64, or ``None`` when nothing is stored yet."""
        if not self.exists():
            return None  # type: ignore[return-value]
        return super().preview()
