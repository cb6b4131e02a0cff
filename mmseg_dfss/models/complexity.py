"""Parameters and FLOPs of a built segmentor, as MMSeg's get_flops.py counts them."""


def segmentor_complexity(model, shape):
    """(params, auxiliary-head params, FLOPs) of a built segmentor for one 3 x H x W
    image: mmengine's get_model_complexity_info on its tensor forward (``_forward``).
    Shared by benchmarks/ and tools/compress.py's ship stage."""
    from mmengine.analysis import get_model_complexity_info
    from mmengine.model import revert_sync_batchnorm
    model = revert_sync_batchnorm(model).eval()
    model.forward = model._forward  # an instance attribute over the class's forward
    try:
        info = get_model_complexity_info(model, input_shape=(3, *shape), show_table=False,
                                         show_arch=False)
    finally:
        del model.forward
    aux = getattr(model, 'auxiliary_head', None)
    aux_params = sum(p.numel() for p in aux.parameters()) if aux is not None else 0
    return info['params'], aux_params, info['flops']
