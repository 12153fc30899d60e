"""Compositions, mixture rules and the tissue -> material map."""

from __future__ import annotations

import pytest

from nmosim.phantoms.errors import SpecError
from nmosim.phantoms.labels import Tissue
from nmosim.phantoms.materials import (
    ADIPOSE,
    BASE_MATERIALS,
    CORTICAL_BONE,
    HYDROXYAPATITE,
    MUSCLE,
    WATER,
    YELLOW_MARROW,
    Material,
    mix_by_mass,
    mix_by_volume,
    tissue_materials,
)


def test_every_base_material_sums_to_one():
    assert {"water", "air", "adipose", "skin", "blood", "cartilage", "spongiosa"} <= set(BASE_MATERIALS)
    for material in BASE_MATERIALS.values():
        assert sum(material.mass_fractions.values()) == pytest.approx(1.0, abs=1e-12)
        assert all(f > 0 for f in material.mass_fractions.values())


def test_hydroxyapatite_matches_its_formula():
    # Ca10(PO4)6(OH)2: molar mass 1004.6 g/mol, of which 10 Ca = 400.8 g and 6 P = 185.8 g.
    assert HYDROXYAPATITE.mass_fractions["Ca"] == pytest.approx(400.78 / 1004.62, rel=1e-3)
    assert HYDROXYAPATITE.mass_fractions["P"] == pytest.approx(185.84 / 1004.62, rel=1e-3)
    assert HYDROXYAPATITE.density_g_cm3 == 3.16


def test_mix_by_volume_conserves_mass_per_element():
    f = 0.3
    mix = mix_by_volume("m", [(MUSCLE, 1 - f), (ADIPOSE, f)])
    assert mix.density_g_cm3 == pytest.approx((1 - f) * 1.05 + f * 0.95)
    for element in ("H", "C", "O", "K"):
        grams = (1 - f) * 1.05 * MUSCLE.mass_fractions.get(
            element, 0
        ) + f * 0.95 * ADIPOSE.mass_fractions.get(element, 0)
        assert mix.mass_fractions[element] * mix.density_g_cm3 == pytest.approx(grams)


def test_mix_by_mass_adds_specific_volumes():
    f = 0.25
    mix = mix_by_mass("m", [(WATER, 1 - f), (HYDROXYAPATITE, f)])
    assert 1 / mix.density_g_cm3 == pytest.approx((1 - f) / 1.0 + f / 3.16)
    assert mix.mass_fractions["Ca"] == pytest.approx(f * HYDROXYAPATITE.mass_fractions["Ca"])
    assert sum(mix.mass_fractions.values()) == pytest.approx(1.0)


def test_a_pure_mixture_is_its_component():
    mix = mix_by_volume("same", [(CORTICAL_BONE, 1.0)])
    assert mix.density_g_cm3 == pytest.approx(CORTICAL_BONE.density_g_cm3)
    for element, fraction in CORTICAL_BONE.mass_fractions.items():
        assert mix.mass_fractions[element] == pytest.approx(fraction)


def test_every_tissue_id_has_a_material():
    materials = tissue_materials()
    assert set(materials) == set(Tissue)
    assert all(isinstance(m, Material) for m in materials.values())


def test_parameters_drive_the_compositions():
    low = tissue_materials(ho_trabecular_bv_tv=0.1)[Tissue.HO_TRABECULAR]
    high = tissue_materials(ho_trabecular_bv_tv=0.3)[Tissue.HO_TRABECULAR]
    assert low.density_g_cm3 == pytest.approx(0.1 * 1.92 + 0.9 * YELLOW_MARROW.density_g_cm3)
    assert high.density_g_cm3 > low.density_g_cm3
    cortex = tissue_materials(ho_cortex_density_g_cm3=1.6)[Tissue.HO_CORTEX]
    assert cortex.density_g_cm3 == 1.6
    assert cortex.mass_fractions == CORTICAL_BONE.mass_fractions
    immature = tissue_materials(ho_immature_ha_mass_fraction=0.1)[Tissue.HO_IMMATURE]
    assert immature.mass_fractions["Ca"] == pytest.approx(0.1 * HYDROXYAPATITE.mass_fractions["Ca"])


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("muscle_atrophic_fat_fraction", 0.9),
        ("trabecular_density_scale", 0.2),
        ("ho_cortex_density_g_cm3", 2.5),
        ("ho_trabecular_bv_tv", -0.1),
        ("fat_density_g_cm3", float("nan")),
    ],
)
def test_bad_parameter_names_itself(name, value):
    with pytest.raises(SpecError, match=name):
        tissue_materials(**{name: value})


def test_bad_materials_are_refused():
    with pytest.raises(SpecError, match="sum to"):
        Material("x", 1.0, {"H": 0.5, "O": 0.4})
    with pytest.raises(SpecError, match="density"):
        Material("x", -1.0, {"H": 1.0})
    with pytest.raises(SpecError, match="sum to"):
        mix_by_volume("m", [(WATER, 0.5), (ADIPOSE, 0.4)])
