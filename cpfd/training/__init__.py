"""Training, split the torchtune way: ``loop`` (one loop for every model), ``checkpoint`` (safetensors + JSON,
resume), ``objectives`` (the loss of each job) and ``recipes`` (teacher, baseline student, fold teachers,
two-stage and joint distillation)."""
