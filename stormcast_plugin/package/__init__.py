from stormcast_plugin.package._impl import *  # noqa: F401,F403
from stormcast_plugin.package._impl import __all__  # noqa: F401
