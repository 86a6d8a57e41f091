"""Research studies on top of the library: ablations and the speed benchmark."""
