"""How kernelmon acts on a kernel: one backend class per kind of kernel."""
