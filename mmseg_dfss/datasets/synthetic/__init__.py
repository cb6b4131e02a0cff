from .build import generate_synthetic
from .pool import SUBDOMAINS, OpenWorldPoolGenerator
from .rooms import CLASSES, PALETTE, RoomSceneGenerator, RoomStyle

__all__ = [
    'generate_synthetic', 'OpenWorldPoolGenerator', 'SUBDOMAINS', 'RoomSceneGenerator',
    'RoomStyle', 'CLASSES', 'PALETTE'
]
