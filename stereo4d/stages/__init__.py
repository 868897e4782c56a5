"""Pipeline stages: each module holds a config dataclass and a ``run(config)``."""
