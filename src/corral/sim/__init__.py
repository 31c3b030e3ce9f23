"""The discrete-event simulator: mechanism that applies scheduling decisions to a modelled fleet."""
