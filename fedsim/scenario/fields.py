"""The base of every scenario section, and the field types the sections share.

Names are checked by the registries they name (`fedsim.scenario.names`), so an unknown
data set, model, attack or defense is an error at its own dotted location.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from fedsim.scenario import names

PositiveInt = Annotated[int, Field(ge=1)]
PositiveFloat = Annotated[float, Field(gt=0)]
NonNegativeFloat = Annotated[float, Field(ge=0)]
Beta = Annotated[float, Field(ge=0, lt=1)]
DatasetName = Annotated[str, AfterValidator(names.known_dataset)]
ModelName = Annotated[str, AfterValidator(names.known_model)]
AttackName = Annotated[str, AfterValidator(names.known_attack)]
DefenseSpec = Annotated[str, AfterValidator(names.valid_defense)]
Slug = Annotated[str, AfterValidator(names.slug)]
DirPath = Annotated[str, AfterValidator(names.directory)]


class Section(BaseModel):
    """Base of every section: unknown keys are errors, values are not coerced across types."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)
