"""The settings: invoke.yaml, the dotenv file and the environment, checked once."""
