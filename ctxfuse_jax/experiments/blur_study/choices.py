"""Names the blur study's config refers to, importable without JAX (config checks read them)."""

SHARP = "sharp"  # a mixture option and a test condition: no blur
DEBLURRED = "deblurred"  # Table 5's test condition: D8 deconvolved with the true kernel
ORIGINAL = "original"  # the model trained on sharp images
# Seed 001's kernels by level name (D2, H4, shake, G3, ...); 'shake' fine-tunes on the training bank.
LEVEL_PRESETS = ("vasiljevic/defocus", "vasiljevic/motion", "vasiljevic/camera_shake", "vasiljevic/gaussian")
TRAIN_BANK = "train"
VGG_MODELS = ("vgg16", "vgg16_bn")
