"""Constants shared across layers: the ImageNet normalisation every released model was trained with."""
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
