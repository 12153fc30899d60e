"""Parametric hip phantoms with neurogenic heterotopic ossification.

Anatomy, lesions, progression and Brooker grading; knows nothing of X-rays.
"""
