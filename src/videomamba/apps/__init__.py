"""Applications that use a trained model: ``predict``, ``evaluate``, ``convert``, ``demo``, ``embed``
and ``search`` (index and search folders of video).

    from videomamba.apps.predict import predict
    from videomamba.apps.evaluate import EvalOptions, evaluate
    predict(["clip.mp4"], "runs/x/model", topk=3)
    evaluate("runs/x/model", "val.csv", options=EvalOptions(shuffle_frames=True))

Applications may import any layer of the library; no layer (models, layers, ops, data, engine)
imports an application.
"""
