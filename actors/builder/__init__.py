"""The builder actor: `docker build` as dockerd's classic builder, and `docker commit`."""
