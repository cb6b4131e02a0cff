"""Write the synthetic original domain (rooms) and open-world pool as PNG files.

    python tools/generate_synthetic.py [--out data/synthetic] [--seed 0]

Deterministic from the seed; a layout made with the same arguments is reused.
"""
import argparse
import json

from mmseg_dfss.datasets.synthetic import SUBDOMAINS, generate_synthetic


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--out', default='data/synthetic', help='output folder')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--num-train', type=int, default=300)
    p.add_argument('--num-test', type=int, default=100)
    p.add_argument('--pool-size', type=int, default=2000)
    p.add_argument('--size', type=int, default=96, help='image side in pixels')
    p.add_argument('--pool-mix', type=json.loads, default=None,
                   help=f'JSON weights of the pool sub-domains {SUBDOMAINS}, '
                   'e.g. \'{"near_rooms": 0.5, "textures": 0.5}\'')
    return p.parse_args()


def main():
    args = parse_args()
    meta = generate_synthetic(args.out, seed=args.seed, num_train=args.num_train,
                              num_test=args.num_test, pool_size=args.pool_size,
                              size=args.size, pool_mix=args.pool_mix)
    print(f'synthetic data in {args.out}: {json.dumps(meta)}')


if __name__ == '__main__':
    main()
