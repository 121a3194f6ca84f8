# The two commands of the README. Both set up .venv first, so they work on a fresh machine.
.PHONY: demo test lint bench

demo:
	scripts/setup.sh
	.venv/bin/goodhartlab demo

test:
	scripts/setup.sh --dev
	.venv/bin/ruff check src tests benchmarks
	.venv/bin/mypy
	.venv/bin/python -m pytest

bench:
	scripts/setup.sh --bench
	.venv/bin/python benchmarks/bench_bestofn.py
	.venv/bin/python benchmarks/bench_detect_update.py
	.venv/bin/python benchmarks/bench_gold.py
	.venv/bin/python benchmarks/bench_gridworlds.py
	.venv/bin/python benchmarks/bench_mahalanobis.py
	.venv/bin/python benchmarks/bench_ppo.py
	.venv/bin/python benchmarks/bench_ray.py
	.venv/bin/python benchmarks/bench_reward_models.py
	.venv/bin/python benchmarks/bench_sampler.py
	.venv/bin/python benchmarks/bench_trl_callback.py
