"""Model families, one module each, and the registry that holds them.

Every module here (but those starting with ``_``) is a family: it registers its
builders, recipe, search space and minimum input size on import. See
:mod:`kerascnn.models.registry` and CONTRIBUTING.md.
"""

from kerascnn.models.registry import (
    Family,
    ModelEntry,
    check_known,
    create_model,
    get_entry,
    get_family,
    list_families,
    list_models,
    recipe_for,
    register_family,
    register_model,
)

__all__ = [
    "Family",
    "ModelEntry",
    "check_known",
    "create_model",
    "get_entry",
    "get_family",
    "list_families",
    "list_models",
    "recipe_for",
    "register_family",
    "register_model",
]
