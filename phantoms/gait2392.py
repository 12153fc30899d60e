"""Numbers of the OpenSim Gait2392 model that place and size the hip muscles (mm, N).

Source: the Gait2392 model of the OpenSim project, opensim-org/opensim-models,
``Models/Gait2392_Simbody/gait2392_thelen2003muscle.osim`` (commit 20a888b, Dec 2024), by Delp S.L.,
Loan J.P., Hoy M.G., Zajac F.E., Topp E.L., Rosen J.M., Thelen D.G., Anderson F.C. and Seth A.
(Delp et al. 1990, IEEE Trans Biomed Eng 37:757; Anderson and Pandy 1999, 2001). Licence: Creative
Commons Attribution 3.0 (CC BY 3.0), as stated in the model's ``credits`` element; the numbers
below are taken from it and converted from m to mm. Rows marked ``[anatomy]`` are not in
Gait2392 and are placed from anatomy texts (Gray's Anatomy, 42nd ed.) relative to its points.

Frames are the model's body frames of the RIGHT side (OpenSim axes: x anterior, y superior,
z to the right): ``pelvis`` (origin midway between the two ASIS), ``femur`` (origin at the
femoral head centre) and ``tibia`` (origin at the knee joint centre; points in it are placed in
the femur frame with the knee extended, see :data:`KNEE_CENTRE_IN_FEMUR`).
"""

from __future__ import annotations

from dataclasses import dataclass

Point = tuple[float, float, float]

# Specific tension that turns a maximum isometric force into a physiological cross-sectional
# area (PCSA = F_max / sigma): 61 N/cm^2 (Arnold et al. 2010, Ann Biomed Eng 38:269, the value
# used with OpenSim lower-limb models), i.e. 0.61 N/mm^2.
SPECIFIC_TENSION_N_PER_MM2 = 0.61


@dataclass(frozen=True)
class MuscleData:
    """One muscle (or muscle part) of the right side.

    ``path``: (body, point) from origin to insertion, body one of "pelvis", "femur", "tibia",
    points in mm in that body's frame (OpenSim axes). ``max_force_n``: maximum isometric force
    (N); ``optimal_fibre_mm``: optimal fibre length (mm); ``source``: where the row comes from.
    """

    name: str
    path: tuple[tuple[str, Point], ...]
    max_force_n: float
    optimal_fibre_mm: float
    source: str

    @property
    def pcsa_mm2(self) -> float:
        """Physiological cross-sectional area (mm^2) at :data:`SPECIFIC_TENSION_N_PER_MM2`."""
        return self.max_force_n / SPECIFIC_TENSION_N_PER_MM2


def _m(name: str, path, force: float, fibre: float, source: str) -> MuscleData:
    return MuscleData(name, tuple((b, tuple(float(c) for c in p)) for b, p in path), force, fibre, source)


P, F, T = "pelvis", "femur", "tibia"

# Gait2392 path points of the right side (PathPoint and the ConditionalPathPoints active with
# the knee and hip extended), m -> mm. Conditional points active only in deep flexion and the
# knee's moving points (quadriceps on the tibia) are left out: the scene ends above the knee.
MUSCLES: tuple[MuscleData, ...] = (
    # Gluteus maximus: glut_max1/2/3_r (superior, middle, inferior parts).
    _m(
        "gluteus_maximus_1",
        (
            (P, (-119.5, 61.2, 70.0)),
            (P, (-129.1, 1.2, 88.6)),
            (F, (-45.7, -24.8, 39.2)),
            (F, (-27.7, -56.6, 47.0)),
        ),
        573,
        142,
        "Gait2392 glut_max1_r",
    ),
    _m(
        "gluteus_maximus_2",
        (
            (P, (-134.9, 17.6, 56.3)),
            (P, (-137.6, -52.0, 91.4)),
            (F, (-42.6, -53.0, 29.3)),
            (F, (-15.6, -101.6, 41.9)),
        ),
        819,
        147,
        "Gait2392 glut_max2_r",
    ),
    _m(
        "gluteus_maximus_3",
        (
            (P, (-155.6, -31.4, 5.8)),
            (P, (-152.9, -105.2, 40.3)),
            (F, (-29.9, -104.1, 13.5)),
            (F, (-6.0, -141.9, 41.1)),
        ),
        552,
        144,
        "Gait2392 glut_max3_r",
    ),
    # Gluteus medius: glut_med1/2/3_r (anterior, middle, posterior).
    _m(
        "gluteus_medius_1",
        ((P, (-40.8, 30.4, 120.9)), (F, (-21.8, -11.7, 55.5))),
        819,
        53.5,
        "Gait2392 glut_med1_r",
    ),
    _m(
        "gluteus_medius_2",
        ((P, (-85.5, 44.5, 76.6)), (F, (-25.8, -5.8, 52.7))),
        573,
        84.5,
        "Gait2392 glut_med2_r",
    ),
    _m(
        "gluteus_medius_3",
        ((P, (-122.3, 10.5, 64.8)), (F, (-30.9, -4.7, 51.8))),
        653,
        64.6,
        "Gait2392 glut_med3_r",
    ),
    # Gluteus minimus: glut_min1/2/3_r.
    _m(
        "gluteus_minimus_1",
        ((P, (-46.7, -8.0, 105.6)), (F, (-7.2, -10.4, 56.0))),
        270,
        68,
        "Gait2392 glut_min1_r",
    ),
    _m(
        "gluteus_minimus_2",
        ((P, (-63.3, -6.5, 99.1)), (F, (-9.6, -10.4, 56.0))),
        285,
        56,
        "Gait2392 glut_min2_r",
    ),
    _m(
        "gluteus_minimus_3",
        ((P, (-83.4, -6.3, 85.6)), (F, (-13.5, -8.3, 55.0))),
        323,
        38,
        "Gait2392 glut_min3_r",
    ),
    # Iliopsoas: the pelvic brim point is the ConditionalPathPoint active at hip extension.
    _m(
        "iliacus",
        (
            (P, (-67.4, 36.5, 85.4)),
            (P, (-25.8, -55.0, 81.1)),
            (P, (-28.8, -80.5, 81.6)),
            (F, (1.7, -54.3, 5.7)),
            (F, (-19.3, -62.1, 12.9)),
        ),
        1073,
        100,
        "Gait2392 iliacus_r",
    ),
    _m(
        "psoas",
        (
            (P, (-64.7, 88.7, 28.9)),
            (P, (-23.8, -57.0, 75.9)),
            (P, (-28.8, -80.5, 81.6)),
            (F, (1.6, -50.7, 3.8)),
            (F, (-18.8, -59.7, 10.4)),
        ),
        1113,
        100,
        "Gait2392 psoas_r",
    ),
    _m(
        "tensor_fasciae_latae",
        ((P, (-31.1, 21.4, 124.1)), (F, (29.4, -99.5, 59.7)), (F, (5.4, -404.9, 35.7))),
        233,
        95,
        "Gait2392 tfl_r",
    ),
    _m(
        "sartorius",
        ((P, (-15.3, -1.3, 124.2)), (F, (-3.0, -356.8, -42.1)), (T, (-5.6, -41.9, -39.9))),
        156,
        520,
        "Gait2392 sar_r",
    ),
    # Rectus femoris: origin at the AIIS; its insertion moves with the knee (left out), the
    # patellar end is placed at the distal femur's anterior surface (the flexion-only point).
    _m(
        "rectus_femoris",
        ((P, (-29.5, -31.1, 96.8)), (F, (33.4, -403.0, 1.9))),
        1169,
        114,
        "Gait2392 rect_fem_r (distal point: its ConditionalPathPoint)",
    ),
    # Vasti: Gait2392 starts them at mid-thigh (lines of action); their proximal origins
    # [anatomy]: vastus lateralis from the base of the greater trochanter and the lateral lip of
    # the gluteal tuberosity, intermedius from the anterolateral upper shaft, medialis from the
    # lower intertrochanteric and spiral lines (Gray's Anatomy).
    _m(
        "vastus_lateralis",
        (
            (F, (-2.0, -50.0, 48.0)),
            (F, (4.0, -110.0, 44.0)),
            (F, (4.8, -185.4, 34.9)),
            (F, (26.9, -259.1, 40.9)),
        ),
        1871,
        84,
        "Gait2392 vas_lat_r; proximal points [anatomy]",
    ),
    _m(
        "vastus_intermedius",
        (
            (F, (12.0, -80.0, 35.0)),
            (F, (18.0, -140.0, 32.0)),
            (F, (29.0, -192.4, 31.0)),
            (F, (33.5, -208.4, 28.5)),
        ),
        1365,
        87,
        "Gait2392 vas_int_r; proximal points [anatomy]",
    ),
    _m(
        "vastus_medialis",
        (
            (F, (0.0, -75.0, 15.0)),
            (F, (5.0, -140.0, 12.0)),
            (F, (14.0, -209.9, 18.8)),
            (F, (35.6, -276.9, 0.9)),
        ),
        1294,
        89,
        "Gait2392 vas_med_r; proximal points [anatomy]",
    ),
    _m(
        "adductor_longus",
        ((P, (-31.6, -83.6, 16.9)), (F, (5.0, -211.1, 23.4))),
        627,
        138,
        "Gait2392 add_long_r",
    ),
    _m(
        "adductor_brevis",
        ((P, (-58.7, -91.5, 16.4)), (F, (0.9, -119.6, 29.4))),
        429,
        133,
        "Gait2392 add_brev_r",
    ),
    _m(
        "adductor_magnus_1",
        ((P, (-73.2, -117.4, 25.5)), (F, (-4.5, -121.1, 33.9))),
        381,
        87,
        "Gait2392 add_mag1_r",
    ),
    _m(
        "adductor_magnus_2",
        ((P, (-83.1, -119.2, 30.8)), (F, (5.4, -228.5, 22.7))),
        343,
        121,
        "Gait2392 add_mag2_r",
    ),
    _m(
        "adductor_magnus_3",
        ((P, (-111.1, -114.1, 48.8)), (F, (7.0, -383.7, -26.6))),
        488,
        131,
        "Gait2392 add_mag3_r",
    ),
    _m("pectineus", ((P, (-43.1, -76.8, 45.1)), (F, (-12.2, -82.2, 25.3))), 266, 100, "Gait2392 pect_r"),
    _m("gracilis", ((P, (-74.0, -118.7, 27.9)), (T, (-26.6, -31.9, -37.7))), 162, 352, "Gait2392 grac_r"),
    _m(
        "quadratus_femoris",
        ((P, (-114.3, -115.1, 52.0)), (F, (-38.1, -35.9, 36.6))),
        381,
        54,
        "Gait2392 quad_fem_r",
    ),
    _m("gemelli", ((P, (-113.3, -82.0, 71.4)), (F, (-14.2, -3.3, 44.3))), 164, 24, "Gait2392 gem_r"),
    _m(
        "piriformis",
        ((P, (-139.6, 0.3, 23.5)), (P, (-119.3, -27.6, 65.7)), (F, (-14.8, -3.6, 43.7))),
        444,
        26,
        "Gait2392 peri_r",
    ),
    # Obturators [anatomy]: Gait2392 has neither. Internus: from the inner surface of the
    # obturator membrane and its bony margin, round the lesser sciatic notch (gem_r's origin) to
    # the medial face of the greater trochanter (gem_r's insertion). Externus: from the outer
    # surface of the membrane, below and behind the femoral neck, to the trochanteric fossa.
    # Forces: PCSA about 4 cm^2 each, rough values of the size of quad_fem_r / gem_r [K].
    _m(
        "obturator_internus",
        (
            (P, (-62.0, -97.0, 42.0)),
            (P, (-92.0, -86.0, 50.0)),
            (P, (-113.3, -82.0, 71.4)),
            (F, (-14.2, -3.3, 44.3)),
        ),
        250,
        30,
        "[anatomy]",
    ),
    _m(
        "obturator_externus",
        ((P, (-56.0, -101.0, 54.0)), (F, (-10.0, -30.0, 22.0)), (F, (-20.0, -12.0, 38.0))),
        250,
        30,
        "[anatomy]",
    ),
    # Hamstrings: the knee-extension ConditionalPathPoints on the tibia are kept.
    _m(
        "semimembranosus",
        ((P, (-119.2, -97.5, 71.5)), (T, (-34.8, -35.2, -18.9))),
        1288,
        80,
        "Gait2392 semimem_r",
    ),
    _m(
        "semitendinosus",
        ((P, (-126.3, -109.9, 60.4)), (T, (-42.0, -28.6, -22.8))),
        410,
        201,
        "Gait2392 semiten_r",
    ),
    _m(
        "biceps_femoris_long",
        ((P, (-126.0, -102.6, 69.4)), (T, (-30.1, -36.0, 29.4))),
        896,
        109,
        "Gait2392 bifemlh_r",
    ),
    # Trunk muscles that share the scene above the iliac crest (Gait2392 lumps them into one
    # actuator each; torso points placed in the pelvis frame with the lumbar joint neutral).
    _m(
        "erector_spinae",
        ((P, (-140.0, 43.9, 43.6)), (P, (-155.7, 191.5, 24.1))),
        2500,
        120,
        "Gait2392 ercspn_r",
    ),
    _m(
        "internal_oblique",
        ((P, (-40.0, 70.0, 115.7)), (P, (-30.7, 241.5, 15.0))),
        900,
        100,
        "Gait2392 intobl_r",
    ),
    _m(
        "external_oblique",
        ((P, (-30.0, -63.6, 10.0)), (P, (-35.7, 191.5, 110.0))),
        900,
        120,
        "Gait2392 extobl_r",
    ),
    # Rectus abdominis [anatomy]: pubic crest to the 5th-7th costal cartilages, 30-50 mm from
    # the midline; PCSA about 5 cm^2 [K].
    _m(
        "rectus_abdominis",
        ((P, (-22.0, -72.0, 25.0)), (P, (10.0, 40.0, 40.0)), (P, (30.0, 250.0, 50.0))),
        300,
        280,
        "[anatomy]",
    ),
)

# Lumbar joint ("back") location in the pelvis frame, m -> mm: the torso points above were
# moved by it. Listed for reference.
BACK_JOINT_IN_PELVIS: Point = (-100.7, 81.5, 0.0)

# Hip joint centre (the ``hip_r`` joint's location in its parent, the pelvis), m -> mm.
HIP_CENTRE_IN_PELVIS: Point = (-70.7, -66.1, 83.5)

# Knee joint centre in the femur frame with the knee extended: the ``knee_r`` joint's
# translation splines read at knee_angle_r = 0 (linear between their knots), m -> mm.
KNEE_CENTRE_IN_FEMUR: Point = (-4.1, -395.9, 0.0)

# Registration landmarks of the right side in the pelvis frame (mm, OpenSim axes).
# Bone points are vertices of the model's right hemipelvis mesh ``Geometry/pelvis.vtp``.
PELVIS_LANDMARKS: dict[str, Point] = {
    "asis": (0.0, 0.0, 118.7),  # most anterior vertex above the hip (skin marker R.ASIS: 20, 30, 128)
    # Most posterior vertex of the iliac crest (skin marker R.PSIS of the Rajagopal marker set
    # in the same repository: -154, 38, 55).
    "psis": (-142.8, 37.9, 56.0),
    "pubic_tubercle": (-21.9, -75.5, 23.9),  # most anterior vertex of the pubis off the midline
    "head_centre": HIP_CENTRE_IN_PELVIS,
    # Posteroinferior vertex of the ischium (also quad_fem_r's origin); the hamstrings arise
    # 10-20 mm above and behind it.
    "ischial_tuberosity": (-114.3, -115.1, 52.0),
    "aiis": (-29.5, -31.1, 96.8),  # rect_fem_r's origin, which is the AIIS
}

# Registration landmarks of the right femur in its frame (mm, OpenSim axes); bone points are
# vertices of ``Geometry/femur_r.vtp``.
FEMUR_LANDMARKS: dict[str, Point] = {
    "head_centre": (0.0, 0.0, 0.0),  # the hip joint's child frame is the femur's origin
    "greater_trochanter": (-13.7, -18.3, 62.0),  # most lateral vertex of the trochanter
    "lesser_trochanter": (-27.0, -57.0, 10.1),  # most posteromedial vertex 40-70 mm below the head
    "knee_centre": KNEE_CENTRE_IN_FEMUR,
    "lateral_epicondyle": (-2.1, -406.3, 37.0),  # most lateral vertex of the distal femur
    "medial_epicondyle": (6.8, -402.5, -38.3),  # most medial vertex of the distal femur
}

# Muscles that may lie inside the pelvic and abdominal cavities (on their walls).
CAVITY_MUSCLES = frozenset({"iliacus", "psoas", "obturator_internus"})
