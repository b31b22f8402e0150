"""CPU placement (core/placement.py): the shipped CPU configs on a 2-core host, more instances and threads for
the expensive models as cores grow, and configs rewritten without touching anything else."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from core.placement import apply_to_config, has_threads, plan, shipped_instances
from core.settings import Settings
from models.registry import model_classes, placement


def test_small_hosts_run_the_shipped_configs() -> None:
    s = Settings()
    s.triton.cores = 4
    for name, placed in placement(s).items():
        config = (s.triton_repo / name / "configs" / "cpu.pbtxt").read_text()
        assert placed.instances == shipped_instances(config), name
        assert placed.threads == 1 and placed.processors == 1, name
        assert apply_to_config(config, placed).replace(" ", "").count("count:") >= 1


def test_many_cores_go_to_the_expensive_models() -> None:
    s = Settings()
    s.triton.cores = 32
    placed = placement(s)
    ocr, effnet = placed["ocr_ppocr"], placed["efficientnet_lite0"]
    assert ocr.instances * ocr.threads >= 3 and ocr.processors >= 2
    assert effnet.instances * effnet.threads <= 2 < ocr.instances * ocr.threads
    assert all(p.processors <= s.kafka.partitions for p in placed.values())


def test_rewritten_config_changes_only_instances_and_threads() -> None:
    s = Settings()
    for name, cls in model_classes(s).items():
        path = s.triton_repo / name / "configs" / "cpu.pbtxt"
        if not (cls.served_by_triton and path.exists()):
            continue
        config = path.read_text()
        placed = plan(64, {name: 1000.0}, floors={name: shipped_instances(config)},
                      threaded={name: has_threads(config)})[name]
        out = apply_to_config(config, placed)
        assert shipped_instances(out) == placed.instances
        if has_threads(config):
            assert f'string_value: "{placed.threads}"' in out
        strip = [ln for ln in config.splitlines() if "intra_op_threads" not in ln and "count" not in ln]
        assert all(ln in out for ln in strip if "instance_group" not in ln and ln.strip() not in ("{", "}", "]", "["))


@given(st.integers(1, 256), st.dictionaries(st.sampled_from(["a", "b", "c", "d"]), st.floats(0.1, 5000), min_size=1))
def test_every_model_gets_at_least_its_floor_and_one_processor(cores: int, costs: dict[str, float]) -> None:
    placed = plan(cores, costs, floors={"a": 2})
    for name, p in placed.items():
        assert p.instances >= (2 if name == "a" else 1) and p.threads >= 1 and 1 <= p.processors <= 4
        assert p.instances * p.threads <= max(cores, 2 if name == "a" else 1) * 2
