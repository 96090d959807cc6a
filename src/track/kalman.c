/* ByteTrack's Kalman filter (x, y, aspect, height + velocities), written from the paper's
 * constant-velocity model with the noise weights of Ultralytics' KalmanFilterXYAH. */
#include "track/kalman.h"

#include <math.h>
#include <string.h>

void it_kf_initiate(const double meas[4], double mean[8], double cov[64]) {
    double h = meas[3], sp = IT_KF_STD_WEIGHT_POSITION, sv = IT_KF_STD_WEIGHT_VELOCITY;
    double std[8] = { 2 * sp * h, 2 * sp * h, 1e-2, 2 * sp * h, 10 * sv * h, 10 * sv * h, 1e-5, 10 * sv * h };
    for (int i = 0; i < 4; i++) {
        mean[i] = meas[i];
        mean[4 + i] = 0;
    }
    memset(cov, 0, 64 * sizeof *cov);
    for (int i = 0; i < 8; i++) cov[i * 8 + i] = std[i] * std[i];
}

void it_kf_predict(double mean[8], double cov[64]) {
    double h = mean[3], sp = IT_KF_STD_WEIGHT_POSITION, sv = IT_KF_STD_WEIGHT_VELOCITY;
    double std[8] = { sp * h, sp * h, 1e-2, sp * h, sv * h, sv * h, 1e-5, sv * h };
    for (int i = 0; i < 4; i++) mean[i] += mean[4 + i];
    /* F P F^T with F = [[I, I], [0, I]]: in 4x4 blocks P = [[A, B], [C, D]] becomes
     * [[A + B + C + D, B + D], [C + D, D]]. */
    double out[64];
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 4; j++) {
            double A = cov[i * 8 + j], B = cov[i * 8 + 4 + j], C = cov[(4 + i) * 8 + j], D = cov[(4 + i) * 8 + 4 + j];
            out[i * 8 + j] = A + B + C + D;
            out[i * 8 + 4 + j] = B + D;
            out[(4 + i) * 8 + j] = C + D;
            out[(4 + i) * 8 + 4 + j] = D;
        }
    for (int i = 0; i < 8; i++) out[i * 8 + i] += std[i] * std[i];
    memcpy(cov, out, sizeof out);
}

int it_kf_update(double mean[8], double cov[64], const double meas[4]) {
    double h = mean[3], sp = IT_KF_STD_WEIGHT_POSITION;
    double r[4] = { sp * h, sp * h, 1e-1, sp * h };
    /* Projection H = [I 0]: S = P[0:4, 0:4] + R, and P H^T = P[:, 0:4]. */
    double S[16], L[16] = { 0 };
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 4; j++) S[i * 4 + j] = cov[i * 8 + j] + (i == j ? r[i] * r[i] : 0);
    /* Cholesky S = L L^T (scipy's cho_factor in Ultralytics). */
    for (int j = 0; j < 4; j++) {
        double d = S[j * 4 + j];
        for (int k = 0; k < j; k++) d -= L[j * 4 + k] * L[j * 4 + k];
        if (!(d > 0)) return -1;
        L[j * 4 + j] = sqrt(d);
        for (int i = j + 1; i < 4; i++) {
            double s = S[i * 4 + j];
            for (int k = 0; k < j; k++) s -= L[i * 4 + k] * L[j * 4 + k];
            L[i * 4 + j] = s / L[j * 4 + j];
        }
    }
    /* Gain K = P H^T S^-1 (8x4): each row k solves S x = (P H^T)[k,:]^T, S symmetric. */
    double K[32];
    for (int k = 0; k < 8; k++) {
        double y[4];
        for (int i = 0; i < 4; i++) { /* forward: L y = b */
            double s = cov[k * 8 + i];
            for (int q = 0; q < i; q++) s -= L[i * 4 + q] * y[q];
            y[i] = s / L[i * 4 + i];
        }
        for (int i = 3; i >= 0; i--) { /* backward: L^T x = y */
            double s = y[i];
            for (int q = i + 1; q < 4; q++) s -= L[q * 4 + i] * K[k * 4 + q];
            K[k * 4 + i] = s / L[i * 4 + i];
        }
    }
    double innov[4];
    for (int i = 0; i < 4; i++) innov[i] = meas[i] - mean[i];
    for (int k = 0; k < 8; k++) {
        double s = 0;
        for (int i = 0; i < 4; i++) s += K[k * 4 + i] * innov[i];
        mean[k] += s;
    }
    /* P -= K S K^T, the form Ultralytics uses. */
    double KS[32];
    for (int k = 0; k < 8; k++)
        for (int j = 0; j < 4; j++) {
            double s = 0;
            for (int i = 0; i < 4; i++) s += K[k * 4 + i] * S[i * 4 + j];
            KS[k * 4 + j] = s;
        }
    for (int a = 0; a < 8; a++)
        for (int b = 0; b < 8; b++) {
            double s = 0;
            for (int j = 0; j < 4; j++) s += KS[a * 4 + j] * K[b * 4 + j];
            cov[a * 8 + b] -= s;
        }
    return 0;
}
