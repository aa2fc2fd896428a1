"""The built-in model families, one module each.

``BUILTIN`` maps each built-in model name to its family module so that the
registry can reject an unknown name, or import just one family, without
loading Keras for all of them (a test checks it matches the registrations).
"""

BUILTIN = {
    "mnist_cnn": "mnist_cnn",
    "lenet5": "lenet",
    "alexnet": "alexnet",
    "vgg11": "vgg",
    "vgg13": "vgg",
    "vgg16": "vgg",
    "vgg19": "vgg",
    "resnet18": "resnet",
    "resnet34": "resnet",
    "resnet50": "resnet",
}
