/* The constant-velocity Kalman filter of ByteTrack on (x, y, aspect, height), with
 * Ultralytics' KalmanFilterXYAH noise model. */
#ifndef ITSCAM_TRACK_KALMAN_H
#define ITSCAM_TRACK_KALMAN_H

/* State: centre x, centre y, aspect w/h, height, and their velocities per frame; the
 * covariance is 8x8 row-major. Process and measurement noise scale with the height, as in
 * Ultralytics (std_weight_position 1/20, std_weight_velocity 1/160; the aspect's noise is
 * fixed at 1e-2 / 1e-5 in the process and 1e-1 in the measurement). */
#define IT_KF_STD_WEIGHT_POSITION (1.0 / 20)
#define IT_KF_STD_WEIGHT_VELOCITY (1.0 / 160)

/* A new state from a measurement (x, y, a, h): zero velocity, broad covariance. */
void it_kf_initiate(const double meas[4], double mean[8], double cov[64]);
/* One frame ahead: x += vx and so on; noise from the height before the step. */
void it_kf_predict(double mean[8], double cov[64]);
/* Correct with a measurement (x, y, a, h). Returns 0, or -1 (state unchanged) when the
 * innovation covariance is not positive definite (a NaN or a zero height). */
int it_kf_update(double mean[8], double cov[64], const double meas[4]);

#endif
