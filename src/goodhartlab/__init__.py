"""goodhartlab: measure, detect and mitigate reward hacking.

The proxy is the reward an optimizer sees; the gold reward is the one we care about.
"""

__version__ = "0.1.0"
