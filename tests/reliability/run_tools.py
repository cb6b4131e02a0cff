"""Test helper: runs several command-line tools one after the other in this one
process (each as ``__main__`` with its own ``sys.argv``; one interpreter start instead
of one per tool) and writes, per tool, the exception it ended with as JSON.

    python run_tools.py PLACES.json RESULTS.json
PLACES.json: {name: [script, arg, ...]}; RESULTS.json: {name: {type, message}}.
"""
import json
import runpy
import sys


def main(places_file, results_file):
    with open(places_file) as f:
        places = json.load(f)
    results = {}
    for name, argv in places.items():
        sys.argv = list(argv)
        try:
            runpy.run_path(argv[0], run_name='__main__')
            results[name] = dict(type=None, message='')
        except BaseException as e:  # SystemExit too: what the tool ended with
            results[name] = dict(type=type(e).__name__, message=str(e))
    with open(results_file, 'w') as f:
        json.dump(results, f)


if __name__ == '__main__':
    main(*sys.argv[1:3])
