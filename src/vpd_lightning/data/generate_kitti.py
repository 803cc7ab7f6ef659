"""The KITTI generator under its first name (it lives in :mod:`vpd_lightning.data.synthetic.kitti`)::

python -m vpd_lightning.data.generate_kitti --root DIR [--num-train N --num-test N --height H --width W]
"""

from vpd_lightning.data.synthetic._common import ROOM_SCENES as SCENES
from vpd_lightning.data.synthetic._common import generator_done
from vpd_lightning.data.synthetic.cli import kitti_main as main
from vpd_lightning.data.synthetic.kitti import KITTI_FOCAL, generate_kitti

__all__ = ["KITTI_FOCAL", "SCENES", "generate_kitti", "generator_done", "main"]

if __name__ == "__main__":
    raise SystemExit(main())
