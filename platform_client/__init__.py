"""The platform side: drives the bank and the WeChat channel like a real platform would.

It never imports ``simulator``; it speaks HTTP and SFTP through ``contracts`` only. Arrives
with the platform-client milestone.
"""
