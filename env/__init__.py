"""Registers ``tacotune/TacotronTraining-v0``; the environment lives in ``env.training_env``."""
import gymnasium

gymnasium.register(id="tacotune/TacotronTraining-v0", entry_point="env.training_env:TrainingEnv")
