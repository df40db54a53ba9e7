"""Stage 5, the study: the started models and the pipeline that runs whole radiographs through them.

``cascade.Cascade`` holds the started runners and every model step; ``pipeline.StudyPipeline`` batches, bounds
memory, isolates failures, applies the intended-use gate and times each stage over a cascade;
``runtime.Runtime`` (what ``olvf.load`` returns) is a cascade that also runs whole studies; ``results`` are what
every writer reads.
"""
