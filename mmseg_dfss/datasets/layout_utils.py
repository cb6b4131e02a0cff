"""Checks shared by the labelled datasets: folders exist, files pair up."""
import os
import os.path as osp


def list_files(folder, suffix):
    """Paths under ``folder`` (recursive, relative, sorted) that end with ``suffix``."""
    return sorted(
        osp.relpath(osp.join(dirpath, name), folder)
        for dirpath, _, names in os.walk(folder, followlinks=True)
        for name in names if name.endswith(suffix))


def missing_files_error(what, paths, total):
    """A FileNotFoundError that names the first few missing files and counts all."""
    shown = '\n  '.join(paths[:5])
    more = f'\n  ... and {len(paths) - 5} more' if len(paths) > 5 else ''
    return FileNotFoundError(f'{what} ({len(paths)} of {total}):\n  {shown}{more}')


def check_dirs(who, *dirs):
    for d in dirs:
        if not osp.isdir(d):
            raise FileNotFoundError(f'{who}: folder {d!r} does not exist')


def paired_files(who, img_dir, ann_dir, img_suffix, seg_map_suffix):
    """``(img_path, seg_map_path)`` pairs matched by name (sorted).

    Raises when a folder is missing, is empty, or holds an image without a label
    or a label without an image, naming the files.
    """
    check_dirs(who, img_dir, ann_dir)
    images = {rel[:-len(img_suffix)]: rel for rel in list_files(img_dir, img_suffix)}
    labels = {rel[:-len(seg_map_suffix)]: rel for rel in list_files(ann_dir, seg_map_suffix)}
    if not images:
        raise FileNotFoundError(f'{who}: no *{img_suffix} images in {img_dir!r}')
    no_label = sorted(osp.join(img_dir, images[s]) for s in images.keys() - labels.keys())
    if no_label:
        raise missing_files_error(
            f'{who}: images without a label (*{seg_map_suffix}) in {ann_dir!r}', no_label,
            len(images))
    no_image = sorted(osp.join(ann_dir, labels[s]) for s in labels.keys() - images.keys())
    if no_image:
        raise missing_files_error(f'{who}: labels without an image in {img_dir!r}', no_image,
                                  len(labels))
    return [(osp.join(img_dir, images[s]), osp.join(ann_dir, labels[s]))
            for s in sorted(images)]
