"""The five networks of the source papers, their preprocessing and explanation heatmaps.

=====================  ====  ======================================================================
registry name          seed  network
=====================  ====  ======================================================================
resnet3d_multitask     000   3D ResNet-34, hematoma volume (cube root) + prognosis heads, Grad-CAM
dtvit                  001   ViT-B/16 encoder + two MLP heads (ICH yes/no, IPH location)
dense_unet             002   Dense U-Net (DenseNet blocks 3, 6, 12, 8, growth 32) segmentation
vgg_wso                003   VGG-16 + window-setting optimisation + SE/spatial attention fusion, CAM
resnet50_cls           004   ResNet-50 hemorrhage yes/no
=====================  ====  ======================================================================

Every ``forward`` returns a dict of named tensors; see :mod:`ichnode.models.registry` for builders,
default (paper) and small configurations, versions and expected inputs.
"""
from ichnode.models.registry import REGISTRY, InputSpec, ModelSpec, build, get, names

__all__ = ["REGISTRY", "InputSpec", "ModelSpec", "build", "get", "names"]
