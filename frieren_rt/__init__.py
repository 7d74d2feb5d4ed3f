"""frieren-rt: real-time video-to-audio sound effects built on the Frieren rectified-flow design."""

__version__ = "0.1.0"
