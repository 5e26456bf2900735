"""pouch: a container engine daemon; see DESIGN.md."""
