"""Multi-machine labs: `netkube server`, `netkube join`, `netkube reset` on real (or emulated) machines."""
