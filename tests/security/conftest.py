"""Attacks on rl's isolation, each made the way a hostile container or image would make it.

Every test names the finding or CVE it reproduces. A host file the test creates outside the
container is the victim: it must come out of the attack unchanged.
"""
