"""The catalog's per-device fields a device model scales by (architecture, compute units,
performance cores, boost clock, cache): parsing, units, validation, and the devices issue 23
names, with one derived CPU peak checked by hand."""

import pytest
import yaml

from deploylens.errors import UserError
from deploylens.hardware.spec import CatalogError, load_catalog, parse_family

MIB = 2 ** 20


def _one(device_yaml: str):
    data = yaml.safe_load(f"""
family: test
sources: {{S1: "a spec page"}}
devices:
  - name: dev
    class: cpu
    peak_tflops: {{fp32: {{value: 1.0, source: [S1]}}}}
{device_yaml}""")
    (spec,) = parse_family(data, "test.yaml")
    return spec


def test_each_new_field_parses_and_converts_units_exactly():
    spec = _one("""
    architecture: raptor_lake
    compute_units: {value: 24, source: [S1]}
    performance_cores: {value: 8, source: [S1], status: derived, note: "8 P + 16 E"}
    boost_clock_ghz: {value: 2.52, source: [S1]}
    cache_mb: {value: 19.25, source: [S1]}
""")
    assert spec.architecture == "raptor_lake"
    assert spec.compute_units.value == 24 and spec.compute_units.sources == ("a spec page",)
    assert spec.performance_cores.value == 8 and spec.performance_cores.status == "derived"
    assert spec.performance_cores.note == "8 P + 16 E"
    assert spec.boost_clock.value == 2.52e9
    assert spec.cache.value == 19.25 * MIB  # MiB: 19.25 MB of L3 is 19712 KiB
    d = spec.to_dict()
    assert d["architecture"] == "raptor_lake" and d["compute_units"]["value"] == 24
    assert d["performance_cores"]["value"] == 8 and d["boost_clock_hz"]["value"] == 2.52e9
    assert d["cache_bytes"]["value"] == 19.25 * MIB


def test_the_new_fields_are_optional():
    spec = _one("")
    assert spec.architecture == "" and spec.compute_units is spec.performance_cores is None
    assert spec.boost_clock is spec.cache is None
    d = spec.to_dict()
    assert d["architecture"] == "" and d["compute_units"] is d["boost_clock_hz"] is d["cache_bytes"] is None


@pytest.mark.parametrize("field", ["compute_units: {value: 8}", "boost_clock_ghz: {value: 2.5, source: []}",
                                   "cache_mb: {value: 6, source: [S9]}", "performance_cores: 4",
                                   "boost_clock_ghz: {value: 2.5, source: [S1], status: unverified}"])
def test_a_field_without_a_known_source_or_status_is_a_catalog_error(field):
    with pytest.raises(CatalogError):
        _one(f"    compute_units: {{value: 8, source: [S1]}}\n    {field}")


@pytest.mark.parametrize("fields, message", [
    ("compute_units: {value: 8.5, source: [S1]}", "positive whole number"),
    ("compute_units: {value: 0, source: [S1]}", "positive whole number"),
    ("performance_cores: {value: 4, source: [S1]}", "needs compute_units"),
    ("compute_units: {value: 4, source: [S1]}\n    performance_cores: {value: 6, source: [S1]}", "at least as many"),
    ("architecture: Ampere", "lowercase"),
    ("architecture: {value: ampere, source: [S1]}", "lowercase"),
])
def test_counts_and_architecture_are_validated(fields, message):
    with pytest.raises(CatalogError, match=message):
        _one(f"    {fields}")


GPUS = ["nvidia_geforce_gtx_1080_ti", "nvidia_geforce_rtx_3090", "nvidia_geforce_rtx_4090", "nvidia_geforce_rtx_4080",
        "nvidia_geforce_rtx_5090", "nvidia_rtx_pro_6000_blackwell", "nvidia_rtx_pro_6000_blackwell_max_q"]
CPUS = ["snapdragon_810", "intel_core_i7_12700h", "intel_core_i9_10940x", "intel_core_i9_13900k",
        "amd_ryzen_9_7950x", "amd_ryzen_9_9950x"]


@pytest.fixture(scope="module")
def catalog():
    return load_catalog()


@pytest.mark.parametrize("name", GPUS + CPUS)
def test_the_shipped_catalog_has_every_device_the_issue_names(catalog, name):
    spec = catalog[name]
    assert spec.device_class == ("gpu" if name in GPUS else "cpu")
    assert spec.architecture and spec.compute_units and spec.boost_clock and spec.bandwidth and spec.cache
    assert spec.peak_flops("fp32") > 0
    assert 0.5e9 < spec.boost_clock.value < 6.5e9 and spec.compute_units.sources
    if spec.performance_cores:
        assert spec.performance_cores.value < spec.compute_units.value


def test_existing_nvidia_entries_gained_sms_clock_and_architecture(catalog):
    assert (catalog["nvidia_t4"].architecture, catalog["nvidia_t4"].compute_units.value) == ("turing", 40)
    assert catalog["nvidia_a100_sxm4_80gb"].cache.value == 40 * MIB
    assert catalog["nvidia_h100_sxm5"].boost_clock.value == 1.98e9
    assert catalog["nvidia_geforce_rtx_4090"].cache.value == 72 * MIB
    for spec in catalog.values():
        if spec.family == "nvidia_gpu":
            assert spec.architecture and spec.compute_units and spec.boost_clock, spec.name


def test_geforce_fp16_is_the_fp32_accumulate_rate_and_pro_parts_run_it_at_full_rate(catalog):
    for name in ("nvidia_geforce_rtx_3090", "nvidia_geforce_rtx_4090", "nvidia_geforce_rtx_4080",
                 "nvidia_geforce_rtx_5090"):
        spec = catalog[name]
        assert spec.peak_flops("fp16") == pytest.approx(2 * spec.peak_flops("fp32"), rel=0.02)
        assert "FP16 accumulate" in spec.peak["fp16"].note
    pro = catalog["nvidia_rtx_pro_6000_blackwell"]
    assert pro.peak_flops("fp16") == pytest.approx(4 * pro.peak_flops("fp32"), rel=0.001)
    assert catalog["nvidia_geforce_gtx_1080_ti"].peak_flops("fp16") == pytest.approx(
        catalog["nvidia_geforce_gtx_1080_ti"].peak_flops("fp32") / 64, rel=0.01)  # GP102: no tensor cores


def test_a_derived_cpu_peak_by_hand(catalog):
    # i9-13900K, AVX2 (no AVX-512): 8 Raptor Cove P-cores x 32 FLOPs/cycle x 5.8 GHz
    # + 16 Gracemont E-cores x 16 FLOPs/cycle x 4.3 GHz = 1484.8 + 1100.8 = 2585.6 GFLOP/s
    spec = catalog["intel_core_i9_13900k"]
    assert (8 * 32 * 5.8 + 16 * 16 * 4.3) * 1e9 == pytest.approx(2585.6e9, rel=1e-12)
    assert spec.peak_flops("fp32") == pytest.approx(2585.6e9, rel=1e-12)
    assert spec.peak["fp32"].status == "derived" and "5.8" in spec.peak["fp32"].note
    assert (spec.compute_units.value, spec.performance_cores.value, spec.boost_clock.value) == (24, 8, 5.8e9)
    assert spec.bandwidth.value == pytest.approx(2 * 5600e6 * 8)  # 2 channels x DDR5-5600 x 8 B
    # Zen 5 desktop: native 512-bit, 64 FLOPs/cycle; Zen 4 double-pumps: 32
    assert catalog["amd_ryzen_9_9950x"].peak_flops("fp32") == pytest.approx(16 * 64 * 5.7e9)
    assert catalog["amd_ryzen_9_7950x"].peak_flops("fp32") == pytest.approx(16 * 32 * 5.7e9)
    assert catalog["intel_core_i9_10940x"].peak_flops("fp32") == pytest.approx(14 * 64 * 4.8e9)
    assert catalog["intel_core_i7_12700h"].peak_flops("fp32") == pytest.approx((6 * 32 * 4.7 + 8 * 16 * 3.5) * 1e9)
    assert catalog["snapdragon_810"].peak_flops("fp32") == pytest.approx((4 * 8 * 1.958 + 4 * 8 * 1.555) * 1e9, rel=1e-3)


def test_every_figure_of_every_device_names_a_source(catalog):
    for spec in catalog.values():
        for f in (spec.compute_units, spec.performance_cores, spec.boost_clock, spec.cache):
            assert f is None or (f.sources and f.status in ("verified", "derived", "measured")), spec.name


def test_devices_named_without_a_source_are_listed_and_refused_with_the_reason():
    from deploylens.hardware.spec import unsourced
    from deploylens.hardware.targets import resolve

    missing = unsourced()
    assert {"hisilicon_hi3519_nnie", "ambarella_cv22", "horizon_sunrise_x4"} <= set(missing)
    assert all("no source found" in why for why in missing.values())
    assert not set(missing) & set(load_catalog())
    with pytest.raises(UserError, match="^ambarella_cv22 cannot be rated: peak unknown: no source found"):
        resolve("ambarella_cv22")
