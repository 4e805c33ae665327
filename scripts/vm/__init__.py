"""The VM test tier: Debian's kernel under QEMU, for kernel features this machine's kernel lacks.

`image` fetches the kernel and builds the tiny initramfs; `run` boots it and runs one command inside.
"""
