"""The Cityscapes and VOC generators under their first name (they live in :mod:`vpd_lightning.data.synthetic`)::

python -m vpd_lightning.data.generate_segmentation {cityscapes,voc} --root DIR [--num-train N --num-val N ...]
"""

from vpd_lightning.data.synthetic.cityscapes import generate_cityscapes, render_street, to_train_ids
from vpd_lightning.data.synthetic.cli import segmentation_main as main
from vpd_lightning.data.synthetic.voc import generate_voc, render_voc, voc_colormap

__all__ = ["generate_cityscapes", "generate_voc", "main", "render_street", "render_voc", "to_train_ids", "voc_colormap"]

if __name__ == "__main__":
    raise SystemExit(main())
