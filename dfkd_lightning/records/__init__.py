"""What a run records about itself: the code and library versions, and the pretrained files
and hub models it loaded."""

from dfkd_lightning.records.provenance import (
    file_sha256,
    pretrained_source,
    provenance,
)
from dfkd_lightning.records.run_record import RunRecord
from dfkd_lightning.records.study import StudyRecord

__all__ = ["RunRecord", "StudyRecord", "file_sha256", "pretrained_source", "provenance"]
