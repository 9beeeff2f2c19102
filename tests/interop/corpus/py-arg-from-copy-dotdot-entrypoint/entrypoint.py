# stand-in for the action's entry point: it runs `goblet deploy` with the action's inputs
import os
import subprocess
