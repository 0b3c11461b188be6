"""Samplers that run from a given x_T and count the UNet image-evaluations they spend."""

from scanner.sampling.chain import CHAINS, chain_sample, chain_timesteps
from scanner.sampling.counting import CountingEps, EpsModel
from scanner.sampling.ddim import ddim_sample, ddim_step, ddim_timesteps
from scanner.sampling.ddpm import ddpm_sample, ddpm_step
from scanner.sampling.schedule import NoiseSchedule
from scanner.sampling.trojan import trojan_sample, trojan_step

__all__ = ["CHAINS", "chain_sample", "chain_timesteps", "CountingEps", "EpsModel", "NoiseSchedule", "ddim_sample", "ddim_step", "ddim_timesteps",
           "ddpm_sample", "ddpm_step", "trojan_sample", "trojan_step"]
