"""Tissue compositions: elemental mass fractions, densities, mixtures, the tissue -> material map.

Composition facts only: no X-ray data or attenuation here (that is ``nmosim.simulate.physics``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from nmosim.phantoms.errors import SpecError, check_range
from nmosim.phantoms.labels import Tissue

# Standard atomic weights (IUPAC 2021, abridged), g/mol: only what the formulas below need.
_ATOMIC_WEIGHT = {"H": 1.008, "C": 12.011, "O": 15.999, "P": 30.974, "Ca": 40.078}

# Tolerance on the sum of a table's mass fractions (tables are rounded to 0.1 %).
_SUM_TOLERANCE = 2e-3


@dataclass(frozen=True)
class Material:
    """A homogeneous material: ``density_g_cm3`` (g/cm3) and elemental ``mass_fractions``.

    ``mass_fractions`` maps element symbols ("H", "Ca", ...) to fractions of the mass. Tables
    rounded to 0.1 % are accepted when they sum to 1 within 0.2 %; they are renormalized to 1.

    Examples
    --------
    >>> Material("water", 1.0, {"H": 11.19, "O": 88.81})
    Traceback (most recent call last):
    ...
    nmosim.phantoms.errors.SpecError: water.mass_fractions sum to 100 (must be 1)
    >>> Material("water", 1.0, {"H": 0.1119, "O": 0.8881}).mass_fractions["O"]
    0.8881
    """

    name: str
    density_g_cm3: float
    mass_fractions: dict[str, float] = field(repr=False)

    def __post_init__(self) -> None:
        check_range(f"{self.name}.density_g_cm3", self.density_g_cm3, 1e-6, 25.0)
        given = dict(self.mass_fractions)
        fractions = {str(k): float(v) for k, v in given.items() if float(v) != 0}
        if not fractions or any(not (v > 0) for v in fractions.values()):
            raise SpecError(f"{self.name}.mass_fractions must be positive numbers, got {fractions}")
        total = sum(fractions.values())
        if abs(total - 1.0) > _SUM_TOLERANCE:
            raise SpecError(f"{self.name}.mass_fractions sum to {total:g} (must be 1)")
        normalized = {k: v / total for k, v in sorted(fractions.items())}
        object.__setattr__(self, "density_g_cm3", float(self.density_g_cm3))
        object.__setattr__(self, "mass_fractions", normalized)

    def __hash__(self) -> int:
        return hash((self.name, self.density_g_cm3, tuple(self.mass_fractions.items())))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Material):
            return NotImplemented
        return (self.name, self.density_g_cm3, dict(self.mass_fractions)) == (
            other.name,
            other.density_g_cm3,
            dict(other.mass_fractions),
        )

    def with_density(self, density_g_cm3: float, name: str | None = None) -> Material:
        """Same composition at another density (g/cm3)."""
        return Material(name or self.name, density_g_cm3, dict(self.mass_fractions))


def _percent(name: str, density: float, **percent: float) -> Material:
    return Material(name, density, {k: v / 100.0 for k, v in percent.items()})


def _from_formula(name: str, density: float, atoms: Mapping[str, float]) -> Material:
    masses = {el: n * _ATOMIC_WEIGHT[el] for el, n in atoms.items()}
    total = sum(masses.values())
    return Material(name, density, {el: m / total for el, m in masses.items()})


# Base materials, DOMAIN.md 4.2 (ICRU 44/46, Woodard & White 1986): density g/cm3, mass percent.
# fmt: off
WATER = _percent("water", 1.00, H=11.19, O=88.81)
AIR = _percent("air", 0.001205, C=0.012, N=75.53, O=23.18, Ar=1.28)
ADIPOSE = _percent("adipose", 0.95,
                   H=11.4, C=59.8, N=0.7, O=27.8, Na=0.1, S=0.1, Cl=0.1)
MUSCLE = _percent("muscle_icru46", 1.05,
                  H=10.2, C=14.3, N=3.4, O=71.0, Na=0.1, P=0.2, S=0.3, Cl=0.1, K=0.4)
SKIN = _percent("skin", 1.09,
                H=10.0, C=20.4, N=4.2, O=64.5, Na=0.2, P=0.1, S=0.2, Cl=0.3, K=0.1)
BLOOD = _percent("blood", 1.06,
                 H=10.2, C=11.0, N=3.3, O=74.5, Na=0.1, P=0.1, S=0.2, Cl=0.3, K=0.2, Fe=0.1)
CORTICAL_BONE = _percent("cortical_bone_icru46", 1.92,
                         H=3.4, C=15.5, N=4.2, O=43.5, Na=0.1, Mg=0.2, P=10.3, S=0.3, Ca=22.5)
# DOMAIN.md 4.2 gives Cl 0.1-0.2, Ca 7.4-7.6, Fe 0-0.1; the Woodard & White variant sums to 100 %.
SPONGIOSA = _percent("spongiosa", 1.18,
                     H=8.5, C=40.4, N=2.8, O=36.7, Na=0.1, Mg=0.1, P=3.4, S=0.2, Cl=0.2, K=0.1,
                     Ca=7.4, Fe=0.1)
RED_MARROW = _percent("red_marrow", 1.03,
                      H=10.5, C=41.4, N=3.4, O=43.9, P=0.1, S=0.2, Cl=0.2, K=0.2, Fe=0.1)
YELLOW_MARROW = _percent("yellow_marrow", 0.98,
                         H=11.5, C=64.4, N=0.7, O=23.1, Na=0.1, S=0.1, Cl=0.1)
CARTILAGE = _percent("cartilage", 1.10,
                     H=9.6, C=9.9, N=2.2, O=74.4, Na=0.5, P=2.2, S=0.9, Cl=0.3)
# fmt: on
# Urine: water with dissolved salts and urea, specific gravity 1.005-1.030 (clinical urinalysis
# range); 1.012 reads ~10 HU, inside simple fluid's 0-20 HU (DOMAIN.md 4.1).
URINE = WATER.with_density(1.012, "urine")
# DOMAIN.md 4.2: hydroxyapatite Ca10(PO4)6(OH)2, 3.16 g/cm3, the bone-mineral surrogate of HO.
HYDROXYAPATITE = _from_formula("hydroxyapatite", 3.16, {"Ca": 10, "P": 6, "O": 26, "H": 2})
# Acrylic (PMMA, (C5H8O2)n), 1.19 g/cm3 (ICRU 44; NIST XCOM/ESTAR material tables, public domain):
# the plastic of CT quality-assurance phantoms (about +120 HU).
PMMA = _from_formula("pmma", 1.19, {"C": 5, "H": 8, "O": 2})

BASE_MATERIALS: dict[str, Material] = {
    m.name: m
    for m in (
        WATER, AIR, ADIPOSE, MUSCLE, SKIN, BLOOD, CORTICAL_BONE, SPONGIOSA, RED_MARROW,
        YELLOW_MARROW, CARTILAGE, HYDROXYAPATITE, PMMA,
    )
}  # fmt: skip


def _check_parts(name: str, parts: Iterable[tuple[Material, float]], what: str) -> list:
    parts = [(m, float(f)) for m, f in parts]
    if not parts:
        raise SpecError(f"{name}: a mixture needs at least one component")
    for m, f in parts:
        check_range(f"{name}.{what}[{m.name}]", f, 0.0, 1.0)
    total = sum(f for _, f in parts)
    if abs(total - 1.0) > 1e-6:
        raise SpecError(f"{name}: {what}s sum to {total:g} (must be 1)")
    return parts


def mix_by_volume(name: str, parts: Iterable[tuple[Material, float]]) -> Material:
    """Mixture of ``(material, volume_fraction)`` parts; volumes are additive.

    The density is the volume-weighted density; each element's mass fraction is its mass per unit
    volume summed over parts, divided by that density.

    Examples
    --------
    >>> m = mix_by_volume("half", [(WATER, 0.5), (CORTICAL_BONE, 0.5)])
    >>> round(m.density_g_cm3, 3)
    1.46
    """
    parts = _check_parts(name, parts, "volume_fraction")
    density = sum(f * m.density_g_cm3 for m, f in parts)
    mass = {}
    for m, f in parts:
        for el, w in m.mass_fractions.items():
            mass[el] = mass.get(el, 0.0) + f * m.density_g_cm3 * w
    return Material(name, density, {el: v / density for el, v in mass.items()})


def mix_by_mass(name: str, parts: Iterable[tuple[Material, float]]) -> Material:
    """Mixture of ``(material, mass_fraction)`` parts; volumes are additive.

    Mass fractions of elements combine linearly; the density follows from the specific volumes,
    ``1 / rho = sum(m_i / rho_i)``.
    """
    parts = _check_parts(name, parts, "mass_fraction")
    specific_volume = sum(f / m.density_g_cm3 for m, f in parts)
    mass = {}
    for m, f in parts:
        for el, w in m.mass_fractions.items():
            mass[el] = mass.get(el, 0.0) + f * w
    return Material(name, 1.0 / specific_volume, mass)


# Hydroxyapatite mass fraction of mineralizing soft tissue. DOMAIN 4.2 suggests 2-15 %, but with
# muscle that reaches only ~300 HU at 64 keV; immature HO reads 300-700 HU (DOMAIN 2.6) and
# calcific deposits 400-1000 HU (DOMAIN 5), which need 15-35 %. The range covers both.
_HA = (0.02, 0.4)
_CALC = (0.1, 0.5)


def _renamed(material: Material, name: str) -> Material:
    return material.with_density(material.density_g_cm3, name)


def tissue_materials(
    *,
    fat_density_g_cm3: float = 0.93,
    muscle_density_g_cm3: float = 1.055,
    muscle_atrophic_fat_fraction: float = 0.1,
    muscle_oedema_water_fraction: float = 0.3,
    trabecular_density_scale: float = 1.0,
    ho_calcifying_ha_mass_fraction: float = 0.06,
    ho_immature_ha_mass_fraction: float = 0.25,
    ho_cortex_density_g_cm3: float = 1.7,
    ho_trabecular_bv_tv: float = 0.2,
    calcification_ha_mass_fraction: float = 0.3,
) -> dict[Tissue, Material]:
    """A :class:`Material` for every id of the ``tissues`` label contract (DESIGN.md 3).

    HU figures below are at 64 keV, the effective energy of a 120 kVp beam through 20 cm of water
    (DOMAIN 4.2: 60-70 keV); ``nmosim.simulate.physics`` computes them. A value outside the stated range
    raises :class:`SpecError`.

    - ``fat_density_g_cm3``: adipose (ICRU 44/46 composition) at this density, 0.90-0.97 g/cm3.
      At ICRU's 0.95 it reads -84 HU, and about -76 HU in a reconstructed pelvis, where the beam is
      harder; 0.93 reads -103 HU (about -95 HU reconstructed), the typical subcutaneous fat of
      DOMAIN 4.1 (-100, range -120 to -80).
    - ``muscle_density_g_cm3``: ICRU 46 muscle composition at this density, 1.04-1.07 g/cm3.
      ICRU 46 rounds the density to 1.05, which reads 44 HU; 1.055 reads 49 HU, the lean thigh
      value (DOMAIN 2.8, Goodpaster 2000: 49.2 +- 2.8). Muscle-based tissues below share it.
    - ``muscle_atrophic_fat_fraction``: volume fraction of adipose in fat-infiltrated muscle
      between its fat streaks, 0.1-0.6 (DOMAIN 4.2, 2.8). 0.1 reads ~34 HU; the streaks of
      case_phantom.fatty_parts (fat, ~-103 HU) take 5 % of the muscle at onset and up to 20 %,
      so the whole muscle holds 14-28 % fat and averages ~27 to ~6 HU: chronic paraplegia
      10-35 HU, heterogeneous with fat streaks, severe fatty replacement below 10 (DOMAIN 2.8, 4.1).
      Unmarbled, 0.2 (~19 HU) alone would read in that range.
    - ``muscle_oedema_water_fraction``: volume fraction of water in oedematous muscle, 0.1-0.5.
      DOMAIN 4.2 gives 10-30 %, but water lowers muscle by only ~0.5 HU per %, so reaching the
      10-35 HU of DOMAIN 4.1/2.9 needs up to 50 %. 0.3 reads ~34 HU (15 below normal, DOMAIN 2.6).
    - ``trabecular_density_scale``: demineralization of native cancellous bone, 0.4-1.0
      (DOMAIN 2.10). A fraction ``1 - s`` of the spongiosa volume (~330 HU) becomes red marrow
      (~10 HU), so the HU scales by about ``s``, as DOMAIN 2.10 prescribes.
    - ``ho_calcifying_ha_mass_fraction``: hydroxyapatite mass fraction of early, amorphous HO,
      0.02-0.4. 0.06 reads ~147 HU (DOMAIN 2.6: 100-300 HU, Sato threshold >= 100 HU).
    - ``ho_immature_ha_mass_fraction``: same for woven immature HO, 0.02-0.4. 0.25 reads ~520 HU
      (DOMAIN 2.6: 300-700 HU).
    - ``ho_cortex_density_g_cm3``: mature HO shell as cortical bone of this density, 1.6-1.92 g/cm3
      (DOMAIN 4.2). 1.7 reads ~1450 HU (rim 800-1500 HU, DOMAIN 2.6; partial volume lowers it).
    - ``ho_trabecular_bv_tv``: bone volume fraction of the mature HO core (cortical bone in yellow
      marrow), 0.1-0.3 (DOMAIN 4.2). 0.2 reads ~310 HU (core 100-400 HU, DOMAIN 2.6).
    - ``calcification_ha_mass_fraction``: hydroxyapatite in soft tissue for calcifications that are
      not HO (confounders), 0.1-0.5. 0.3 reads ~690 HU (DOMAIN 5: deposits of 400-1000 HU).
    """
    rho_fat = check_range("fat_density_g_cm3", fat_density_g_cm3, 0.90, 0.97)
    rho_muscle = check_range("muscle_density_g_cm3", muscle_density_g_cm3, 1.04, 1.07)
    f_fat = check_range("muscle_atrophic_fat_fraction", muscle_atrophic_fat_fraction, 0.1, 0.6)
    f_water = check_range("muscle_oedema_water_fraction", muscle_oedema_water_fraction, 0.1, 0.5)
    s_trab = check_range("trabecular_density_scale", trabecular_density_scale, 0.4, 1.0)
    ha_calc = check_range("ho_calcifying_ha_mass_fraction", ho_calcifying_ha_mass_fraction, *_HA)
    ha_imm = check_range("ho_immature_ha_mass_fraction", ho_immature_ha_mass_fraction, *_HA)
    rho_cortex = check_range("ho_cortex_density_g_cm3", ho_cortex_density_g_cm3, 1.6, 1.92)
    bv_tv = check_range("ho_trabecular_bv_tv", ho_trabecular_bv_tv, 0.1, 0.3)
    ha_conf = check_range("calcification_ha_mass_fraction", calcification_ha_mass_fraction, *_CALC)

    muscle = MUSCLE.with_density(rho_muscle, "muscle")
    fat = ADIPOSE.with_density(rho_fat, "fat")
    # DOMAIN 4.2: skin, vessels, nerves, capsule and cartilage share one label; a 50/50 volume mix
    # of skin and cartilage (~90 HU) sits between dermis and capsule/cartilage (DOMAIN 4.1).
    soft_other = mix_by_volume("soft_tissue_other", [(SKIN, 0.5), (CARTILAGE, 0.5)])
    return {
        Tissue.AIR: AIR,
        Tissue.FAT: fat,
        Tissue.MUSCLE: muscle,
        Tissue.MUSCLE_ATROPHIC: mix_by_volume("muscle_atrophic", [(muscle, 1.0 - f_fat), (fat, f_fat)]),
        Tissue.MUSCLE_OEDEMATOUS: mix_by_volume(
            "muscle_oedematous", [(muscle, 1.0 - f_water), (WATER, f_water)]
        ),
        Tissue.CORTICAL_BONE: _renamed(CORTICAL_BONE, "cortical_bone"),
        Tissue.TRABECULAR_BONE: mix_by_volume(
            "trabecular_bone", [(SPONGIOSA, s_trab), (RED_MARROW, 1.0 - s_trab)]
        ),
        Tissue.MARROW_YELLOW: _renamed(YELLOW_MARROW, "marrow_yellow"),
        Tissue.HO_CALCIFYING: mix_by_mass(
            "ho_calcifying", [(muscle, 1.0 - ha_calc), (HYDROXYAPATITE, ha_calc)]
        ),
        Tissue.HO_IMMATURE: mix_by_mass("ho_immature", [(muscle, 1.0 - ha_imm), (HYDROXYAPATITE, ha_imm)]),
        Tissue.HO_CORTEX: CORTICAL_BONE.with_density(rho_cortex, "ho_cortex"),
        Tissue.HO_TRABECULAR: mix_by_volume(
            "ho_trabecular", [(CORTICAL_BONE, bv_tv), (YELLOW_MARROW, 1.0 - bv_tv)]
        ),
        Tissue.SOFT_TISSUE_OTHER: soft_other,
        Tissue.CALCIFICATION: mix_by_mass(
            "calcification", [(soft_other, 1.0 - ha_conf), (HYDROXYAPATITE, ha_conf)]
        ),
        Tissue.URINE: URINE,
        Tissue.BLOOD: BLOOD,
        # Peripheral nerve: fascicles in epineurial fat. DOMAIN.md gives no value; modelled as
        # skin-like connective tissue with 20 % fat by volume, between fat and muscle on CT.
        Tissue.NERVE: mix_by_volume("nerve", [(SKIN, 0.8), (fat, 0.2)]),
    }
