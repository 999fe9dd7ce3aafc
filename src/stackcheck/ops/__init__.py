"""The operator tools behind `./run`: image builds, secret files and their rotation,
the benchmark, mail replay, Swarm deploys and the older-engine check. None imports the
pytest harness."""
