"""The roles pouchd runs, kept free of imports: every role's process reads this first."""

# The actor processes, in start order, after the broker and containerd;
# name -> "module:class", imported only by the process that hosts it.
ACTOR_CLASSES = {
    "system": "pouch.actors.system:SystemActor",
    "image": "pouch.actors.image.actor:ImageActor",
    "volume": "pouch.actors.volume.actor:VolumeActor",
    "network": "pouch.actors.network.actor:NetworkActor",
    "container": "pouch.actors.container.actor:ContainerActor",
    "builder": "pouch.actors.builder.actor:BuilderActor",
    "cri": "pouch.actors.cri.actor:CriActor",  # only with --enable-cri
}
ACTORS = tuple(ACTOR_CLASSES)
# The environment variable that tells a child who its supervisor is.
PARENT_ENV = "POUCH_SUPERVISOR_PID"
