"""An asyncio SDK for HappyRobot's model-training API."""

__version__ = "0.1.0"
