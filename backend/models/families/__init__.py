"""The model families; importing a module registers it (the order here is the order of the spec help)."""

from . import demo, torchvision_zoo, checkpoint, timm_zoo, python_code  # noqa: I001 -- one name per family: this is the registration line
